"""Facts about Tenstorrent hardware and software that open no device and import no ttnn."""
