// Importing the layer kind registers it, so saved quantized models load again.
import './quantized-linear.js';
