"""The `keepfix` command line. Never imports kopf."""
