"""Generated code for the missions.v1 contract. Do not edit: run scripts/gen_protos.py."""
