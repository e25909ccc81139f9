#!/bin/sh
# Asterisk's start in the deployment: the configuration of ivr_config/asterisk/ (mounted read-only
# at /opt/ivr-asterisk) over the image's, with the AMI secret from ASTERISK_AMI_SECRET filled in
# (the gateways and the dialler share this container's loopback, where manager.conf listens).
set -eu
: "${ASTERISK_AMI_SECRET:?set ASTERISK_AMI_SECRET}"
case "$ASTERISK_AMI_SECRET" in
  *[!A-Za-z0-9_-]*) echo "ASTERISK_AMI_SECRET: letters, digits, - and _ only" >&2; exit 2 ;;
esac
cp /opt/ivr-asterisk/*.conf /etc/asterisk/
sed -i "s/CHANGE_ME_AMI_SECRET/${ASTERISK_AMI_SECRET}/" /etc/asterisk/manager.conf
# The Chinese prompts and hold music of `make asterisk-sounds`, when mounted.
if [ -d /opt/ivr-sounds ]; then cp -r /opt/ivr-sounds/. /var/lib/asterisk/; fi
exec asterisk -f -U asterisk -G asterisk
