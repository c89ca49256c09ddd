// WebGPU on Dawn's OpenGL ES backend (compatibility feature level): Mesa llvmpipe behind EGL works with
// Debian's stock Mesa 22.3 (scripts/setup-gles.sh).
import { describeWebgpu, openWebgpu } from './test-support/webgpu.js';

describeWebgpu('opengles', await openWebgpu('opengles'));
