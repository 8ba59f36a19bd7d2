"""edgeupdate.clients: THE DEVICES in Flower. The ClientApp (verify, stage, commit, evaluate),
local training for federated strategies, and compressed uploads."""
