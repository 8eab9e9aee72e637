"""The wire formats of `koala serve`: one adapter module each (`base.py`)."""
