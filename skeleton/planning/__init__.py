"""Planning: MCTS, model-based value expansion, world models, latent-space planning."""
