from .cli import main

if __name__ == "__main__":  # not when a `spawn`ed child process (render/apart.py) imports this module again
    raise SystemExit(main())
