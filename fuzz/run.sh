#!/bin/sh
# Fuzz a target for SECONDS (default 60): fuzz/run.sh [decoder|server] [SECONDS]
#   decoder  the event-stream decoder (fuzz/fuzz_decoder.py), the default
#   server   the request parsing of `koala serve` (fuzz/fuzz_server.py)
# Findings land in fuzz/crash-*; the corpus grows in fuzz/corpus/ (decoder) or
# fuzz/corpus-server/ (not committed). Further arguments go to libFuzzer.
set -eu
cd "$(dirname "$0")/.."
target=decoder
case "${1:-}" in
    decoder|server) target="$1"; shift ;;
esac
seconds="${1:-60}"
shift 2>/dev/null || true
python="${PYTHON:-.venv/bin/python}"
"$python" -c "import atheris" 2>/dev/null || "$python" -m pip install -q atheris
if [ "$target" = server ]; then
    exec "$python" fuzz/fuzz_server.py -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix=fuzz/ "$@" fuzz/corpus-server
fi
exec "$python" fuzz/fuzz_decoder.py -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -dict=fuzz/sse.dict -artifact_prefix=fuzz/ \
    "$@" fuzz/corpus
