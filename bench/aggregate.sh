#!/usr/bin/env bash
# atex-aggregate benchmark (being written).
echo "bench-aggregate: not written yet" >&2
