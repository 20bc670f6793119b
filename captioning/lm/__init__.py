"""Character-level language model on the recurrent core (char-rnn, Karpathy 2015)."""
