"""Phone channel: Asterisk AudioSocket audio server, AMI control and call priority routing."""
