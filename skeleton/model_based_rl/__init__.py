"""Model-based RL: probabilistic dynamics models, ensembles, MPC and Dyna-Q."""
