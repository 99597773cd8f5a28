"""The edges of the system: configuration (:mod:`influent.config`) and the shared data model
(:mod:`influent.model`) at the bottom, which every package imports; the CLI
(:mod:`influent.cli`) and the local dev stack (:mod:`influent.devstack`) at the top, which import
every package. Layers are checked by ``lint-imports`` (setup.cfg)."""
