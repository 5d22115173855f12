using Microsoft.Extensions.Logging;
using Tapdisk.Filters.Mirror;

namespace Tapdisk.Daemon;

/// <summary>The secondary a VBD's stack is opened with: "type:path", mode, the VBD's state that outlives stacks, and where to log.</summary>
internal sealed record SecondarySpec(string Parameters, SecondaryMode Mode, SecondaryState State, ILogger Logger, string VbdName, Action<Exception> OnUnreachable);
