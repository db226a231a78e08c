"""Plain functions the kopf decorators in ``main.py`` delegate to."""
