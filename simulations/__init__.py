"""Offline simulation of the service against a world with hidden ground truth (coming with the simulator issue)."""
