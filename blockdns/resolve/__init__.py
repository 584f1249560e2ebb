"""The handler chain: each concern is one small handler; ``server/app.py`` assembles them in one place."""
