"""Hierarchical RL: options, HAC, goal-conditioned RL with HER, FeUdal networks."""
