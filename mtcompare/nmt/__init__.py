"""Neural MT: LSTM encoder-decoder with attention, training and search."""
