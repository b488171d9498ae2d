from suite.cli import main

if __name__ == "__main__":  # guarded: spawned helper processes re-import this module
    raise SystemExit(main())
