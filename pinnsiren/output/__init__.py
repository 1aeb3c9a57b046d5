"""What a run leaves behind: HDF5 grid files (:mod:`.gridfile`) and PNG figures (:mod:`.plots`)."""
