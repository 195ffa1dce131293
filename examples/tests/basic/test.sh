#!/bin/bash
# Print the greeting the test's environment sets.
echo "${GREETING:-unset}, from $(pwd)"
