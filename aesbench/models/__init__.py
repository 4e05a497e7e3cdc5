"""The reference models aesbench trains itself (CALM, ArtQuant) and the building blocks they share."""
