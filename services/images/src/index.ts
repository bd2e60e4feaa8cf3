export * from './base-image.js';
export * from './build.js';
export * from './context-digest.js';
export * from './dockerignore.js';
export * from './exec.js';
export * from './podman.js';
