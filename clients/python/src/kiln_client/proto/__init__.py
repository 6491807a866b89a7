"""Kiln wire protocol messages, generated from Protos/kiln/v1 by gen.sh."""
