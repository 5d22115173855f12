using Tapdisk.Abi;

namespace Tapdisk.Storage;

/// <summary>
/// The driver table: formats and filters in one explicit list (no reflection), and the one way a VBD's stack is
/// built from it: the format chain named by "type:path", then the filters named, innermost first. Adding a filter is
/// one class and one row.
/// </summary>
public sealed class DiskTypeTable
{
    private readonly DiskType[] _rows;

    public DiskTypeTable(params DiskType[] rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        _rows = rows;
        Opener = new ImageOpener([.. rows.Where(r => r.Kind == LayerKind.Image && r.Driver is not null).Select(r => r.Driver!)]);
    }

    public IReadOnlyList<DiskType> Rows => _rows;

    /// <summary>Opens the format rows' images (and their parents).</summary>
    public ImageOpener Opener { get; }

    public DiskType? Find(string name) => Array.Find(_rows, r => r.Name == name);

    /// <summary>The numeric id stats print as driver.type (-1 for a layer that is not in the table).</summary>
    public int Id(string name) => Find(name)?.Id ?? -1;

    /// <summary>This table with one more row (a test's filter, a per-open driver variant replacing its namesake).</summary>
    public DiskTypeTable With(DiskType row)
    {
        ArgumentNullException.ThrowIfNull(row);
        return new DiskTypeTable([.. _rows.Where(r => r.Name != row.Name), row]);
    }

    /// <summary>
    /// Opens "type:path" with blktap's errors (no colon EINVAL, type over 31 characters ENAMETOOLONG, unknown ENOENT,
    /// known but not built or a filter ENOSYS), then wraps <paramref name="filters"/> around it, innermost first.
    /// Whatever was opened is closed again if a later step fails.
    /// </summary>
    public IBlockImage OpenStack(string parameters, ImageOpenOptions options, IReadOnlyList<string>? filters = null, ImageOpener? opener = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        int colon = parameters.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            throw new ImageOpenException(parameters, Errno.EINVAL, "params must be type:path");
        }

        string type = parameters[..colon];
        if (type.Length > 31)
        {
            throw new ImageOpenException(parameters, Errno.ENAMETOOLONG, "disk type name longer than 31 characters");
        }

        DiskType row = Find(type) ?? throw new ImageOpenException(parameters, Errno.ENOENT, $"disk type '{type}' is not supported");
        if (row.Kind != LayerKind.Image || !row.IsBuilt)
        {
            throw new ImageOpenException(parameters, Errno.ENOSYS, $"disk type '{type}' is not supported");
        }

        // Resolve every filter before opening anything, so an unbuilt one costs no open and close of the chain.
        var factories = new List<Func<IBlockImage, IBlockImage>>();
        foreach (string name in filters ?? [])
        {
            DiskType? filter = Find(name);
            if (filter is not { Kind: LayerKind.Filter })
            {
                throw new ImageOpenException(parameters, Errno.ENOENT, $"'{name}' is not a filter in the driver table");
            }

            factories.Add(filter.Filter ?? throw new ImageOpenException(parameters, Errno.ENOSYS, $"filter '{name}' is not supported by this build"));
        }

        IBlockImage stack = (opener ?? Opener).Open(type, parameters[(colon + 1)..], options);
        foreach (Func<IBlockImage, IBlockImage> wrap in factories)
        {
            try
            {
                stack = wrap(stack);
            }
            catch
            {
                stack.Dispose();
                throw;
            }
        }

        return stack;
    }
}
