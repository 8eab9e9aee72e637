"""`python -m koala_chat`: the `koala` command."""

from koala_chat._cli import run

if __name__ == "__main__":
    run()
