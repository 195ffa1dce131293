#!/bin/bash
# Never run: the test is disabled.
exit 1
