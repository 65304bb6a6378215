"""Support code for the effnet verification suite (loaded by the root conftest.py)."""
