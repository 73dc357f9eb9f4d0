import { describe, expect, it } from 'vitest';
import * as boot from '../../../src/boot/index.js';

describe('BootImageError', () => {
  it('is an Error named BootImageError with an image-prefixed message', () => {
    const e = new boot.BootImageError('kernel', "not a bzImage (no 'HdrS' magic at 0x202)");
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('BootImageError');
    expect(e.image).toBe('kernel');
    expect(e.message).toBe("kernel: not a bzImage (no 'HdrS' magic at 0x202)");
  });

  it('is re-exported with every loader from the index', () => {
    for (const name of [
      'buildE820',
      'buildFirmwareE820',
      'e820ToBytes',
      'buildAcpiTables',
      'buildIdentityPageTables',
      'buildGdt',
      'parseElf',
      'loadBzImage',
      'parseBzImageHeader',
      'loadMultiboot',
      'findMultibootHeader',
      'planFirmware',
      'loadFlat',
    ]) {
      expect(typeof (boot as Record<string, unknown>)[name]).toBe('function');
    }
    expect(boot.LOW_MEMORY_END).toBe(0xc0000000);
  });
});
