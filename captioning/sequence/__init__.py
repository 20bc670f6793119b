"""Many-to-one and sequence-to-sequence tasks on the recurrent core, and the long-term-dependency experiment."""
