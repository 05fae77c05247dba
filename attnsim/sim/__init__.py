"""Cycle-level simulators. Import the modules directly (attnsim.sim.spatial, ...)."""
