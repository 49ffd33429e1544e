"""Running a model over benchmark videos: dataset frames to model inputs and back (`video_input`), one
video folder at a time with resume (`runner`), whole benchmark sets scored or zipped (`benchmark_sets`), the
options every fast mode takes (`fast`), and the ours-vs-published tables (`reproduce`)."""
