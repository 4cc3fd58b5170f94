"""The runtime: executes a compiled plan on transformers, peft, bitsandbytes, deepspeed and datasets."""
