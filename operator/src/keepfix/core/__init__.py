"""The pure decision core: plain dicts in, frozen dataclasses out; no I/O, no clock."""
