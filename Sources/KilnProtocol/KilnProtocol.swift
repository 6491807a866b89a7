// Wire protocol: see Protos/kiln/v1
