"""The ``cycleisp-fast`` subcommands of the pipelines: synth, denoise, eval, train, convert."""
