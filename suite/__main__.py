from suite.cli import entry

if __name__ == "__main__":  # guarded: spawned helper processes re-import this module
    raise SystemExit(entry())
