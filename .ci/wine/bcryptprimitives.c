/* Wine 8 (Debian 12) has no bcryptprimitives.dll, whose ProcessPrng Rust's
   standard library (and getrandom) call for random bytes on Windows: this
   stand-in gives them RtlGenRandom's. Only .ci/platforms builds it, to run the
   test binaries under wine; nothing shipped uses it. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
