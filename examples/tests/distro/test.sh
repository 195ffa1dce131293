#!/bin/bash
# Show which branch of the adjust rules applied.
echo "mode: ${MODE:-unset}"
[ -n "${MODE:-}" ]
