import { describe, expect, it } from 'vitest';
import * as devices from '../../../src/devices/index.js';

describe('devices index', () => {
  it('re-exports every device', () => {
    for (const name of ['Uart16550', 'I8042', 'ResetPort', 'PostPort', 'Cmos', 'DebugExit', 'Debugcon', 'FwCfg']) {
      expect(typeof (devices as Record<string, unknown>)[name]).toBe('function');
    }
    expect(typeof devices.buildE820Bytes).toBe('function');
    expect(devices.FwCfgItem.FILE_DIR).toBe(0x19);
  });
});
