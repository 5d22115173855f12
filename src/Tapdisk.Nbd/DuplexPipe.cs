using System.IO.Pipelines;

namespace Tapdisk.Nbd;

/// <summary>A plain pair of pipe ends.</summary>
internal sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input { get; } = input;

    public PipeWriter Output { get; } = output;
}
