using Tapdisk.Storage;

namespace Tapdisk.Nbd;

/// <summary>
/// One named export: a name for the handshake over a VBD's <see cref="BlockBackend"/>, which owns the gate (pause,
/// drain, resume with a new stack), validation, statistics and the I/O workers. Clients stay connected across a
/// pause; their requests wait at the gate.
/// </summary>
public sealed class NbdExport
{
    public NbdExport(string name, string description, BlockBackend backend)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(backend);
        Name = name;
        Description = description;
        Backend = backend;
    }

    /// <summary>An export over its own backend (tests, embedded servers); tapdisk shares one backend with the VBD's rings.</summary>
    public NbdExport(string name, string description, IBlockImage image)
        : this(name, description, new BlockBackend(image, new BlockBackendOptions { Name = $"export {name}" }))
    {
    }

    public string Name { get; }

    public string Description { get; }

    public BlockBackend Backend { get; }

    /// <summary>The stack requests currently go to.</summary>
    public IBlockImage Image => Backend.Image;
}
