"""Offline simulation of the service against a world with hidden ground truth (`banditrec simulate`,
`banditrec tune`): generated worlds (`world.py`) and one fitted to real ratings (`ratings.py`)."""
