"""Offline training and evaluation of the truck health model."""
