#!/bin/bash
# Take a couple of seconds, well within the duration.
sleep 2
echo done
