"""Training: the recipe (train.py) and the pieces it wires together."""
