#!/bin/sh
# Fuzz the event-stream decoder for SECONDS (default 60): fuzz/run.sh 300
# Findings land in fuzz/crash-*; the corpus grows in fuzz/corpus/ (not committed).
set -eu
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift 2>/dev/null || true
python="${PYTHON:-.venv/bin/python}"
"$python" -c "import atheris" 2>/dev/null || "$python" -m pip install -q atheris
exec "$python" fuzz/fuzz_decoder.py -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -dict=fuzz/sse.dict -artifact_prefix=fuzz/ \
    "$@" fuzz/corpus
