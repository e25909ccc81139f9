"""Tests of the phone channel (AudioSocket server, AMI wrapper, priority rules) over loopback."""
