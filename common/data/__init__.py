"""Files on disk and what they hold: DAVIS / YouTube-VOS layouts (`datasets`), palette PNGs (`palette`), a user's
clip (`clip`), overlay videos (`overlay`), result folders (`output_folder`), scribbles (`scribbles`,
`davisinteractive_compat`) and the generated offline sample (`synthetic`, `python -m common.data.synthetic`)."""
