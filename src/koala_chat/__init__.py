"""koala_chat: streaming chat completions from the Koala chat API (koala.sh)."""
