"""The wire formats of `koala serve`: one adapter module each (`base.py`).

`framing.py` turns a reply's struct into a `data:` event, for the formats
whose replies are structs (chat and legacy completions).
"""
