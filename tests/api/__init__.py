"""The api tests (see conftest.py for fixtures, fakes.py for loopback service stand-ins)."""
