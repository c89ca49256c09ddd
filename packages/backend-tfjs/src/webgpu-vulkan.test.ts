// WebGPU on Dawn's Vulkan backend: a real GPU, or Mesa's lavapipe on the CPU (scripts/setup-vulkan.sh).
import { describeWebgpu, openWebgpu } from './test-support/webgpu.js';

describeWebgpu('vulkan', await openWebgpu('vulkan'));
