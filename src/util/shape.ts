/** Small facts about shapes and bytes shared by the tensor, file-format and data code. */

/** The number of elements of a tensor of this shape (1 for a scalar's empty shape). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A shape as error messages print it: `[2,3]`. */
export const shapeStr = (shape: readonly number[]): string => `[${shape.join(',')}]`;

/** Whether typed arrays on this machine are little-endian, the byte order of every file format here. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
